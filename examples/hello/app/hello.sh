#!/bin/sh
echo "$GREETING, ${1:-world}, from $(cat /srv/platform/arch.txt)"
