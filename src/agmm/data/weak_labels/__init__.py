"""Weak labels: simulate them from dense masks, read the files the community ships, write them."""
