#!/bin/sh
# The stand-in's run.sh, where the actions runner's own is: in its install directory.
exec /usr/bin/python3 -I -S ./standin.py
