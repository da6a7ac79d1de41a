#!/bin/sh
# A module that prints junk around its JSON, as some login shells and MOTDs do.
echo "motd: welcome"
echo "more junk"
echo '{"changed": false, "junky": true}'
echo "trailing junk"
