#!/bin/sh
# The front-ends image's entrypoint: writes nginx's configuration from the
# template beside this script into $TMPDIR (/tmp: the root filesystem is
# read-only), the console's content security policy letting it call the
# origins in CASEMESH_CONSOLE_CONNECT_ORIGINS (comma-separated: its OpenID
# Connect provider), then becomes nginx. An origin that is not one (a path, a
# quote, plain http off loopback) stops the container rather than reach the
# header: the gateway refuses the same values (casemesh_gateway.settings).
set -eu
set -f # the origins are split on commas below, never expanded as file names

origins=""
for origin in $(printf '%s' "${CASEMESH_CONSOLE_CONNECT_ORIGINS:-}" | tr ',' ' '); do
    if ! printf '%s\n' "$origin" |
        grep -Eqx 'https://[A-Za-z0-9.-]+(:[0-9]{1,5})?|http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?'; then
        echo "CASEMESH_CONSOLE_CONNECT_ORIGINS: '$origin' is not an origin like https://id.example.com (https://, or http:// on loopback; no path)" >&2
        exit 64
    fi
    origins="$origins $origin"
done

conf="${TMPDIR:-/tmp}/nginx.conf"
sed "s|@CONSOLE_CONNECT_ORIGINS@|$origins|" "$(dirname "$0")/nginx.conf.template" >"$conf"
exec nginx -c "$conf" "$@"
