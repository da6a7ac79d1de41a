#!/bin/sh
# A module that prints no JSON at all.
echo "this is not json"
echo "an error" >&2
