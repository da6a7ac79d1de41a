#!/bin/sh
# WANT_JSON
# A script module that writes as it goes, as the tail is meant to show: it
# runs its `script` argument with sh, and what the script prints is the
# module's own output, written as it comes (the script ends by printing the
# module's JSON result).
script=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["script"])' "$1") || exit 1
exec /bin/sh -c "$script"
