#!/bin/sh
# labkit container entrypoint: run the command as the unprivileged user `lab`.
#
# Started as root (the `lab` service of docker-compose.yml does that), it first gives
# `lab` the uid/gid that owns the notebooks folder (a bind mount of ./notebooks), so
# students' files stay writable and keep their owner on any Linux host, whatever the
# host user's uid. On Docker Desktop (macOS, Windows) bind mounts show up as owned by
# the host user or by root with open permissions; a root-owned folder keeps the default
# uid 1000 when that uid can write there, and only when it cannot (a Linux host where
# the user is root) do the commands stay root. Then it drops root for good (setpriv)
# and execs the command.
#
# Started as any other user (`docker run --user ...`, the `broker` service), it only
# checks the notebooks folder is writable and execs the command.
set -eu

WORK="${LABKIT_NOTEBOOKS:-/home/lab/notebooks}"

# LABKIT_RELAY=9092=broker:9092 (the lab service): with `labkit lab`, also make the
# broker reachable as localhost:9092 inside this container (docker/relay.py).
start_relay() {
  if [ -n "${LABKIT_RELAY:-}" ] && [ "${1:-} ${2:-}" = "labkit lab" ]; then
    labkit-relay "${LABKIT_RELAY%%=*}" "${LABKIT_RELAY#*=}" &
  fi
}

warn_if_readonly() {
  if [ -d "$WORK" ] && ! [ -w "$WORK" ]; then
    echo "labkit: WARNING: $WORK is not writable by uid $(id -u); your notebook edits" \
         "cannot be saved. Fix on the host: chmod -R u+rwX,g+rwX notebooks" >&2
  fi
}

if [ "$(id -u)" != 0 ]; then
  warn_if_readonly
  start_relay "$@"
  exec "$@"
fi

uid=1000
gid=1000
if [ -d "$WORK" ]; then
  owner_uid=$(stat -c %u "$WORK")
  owner_gid=$(stat -c %g "$WORK")
  if [ "$owner_uid" != 0 ]; then
    uid=$owner_uid
    gid=$owner_gid
  elif ! setpriv --reuid=1000 --regid=1000 --clear-groups test -w "$WORK"; then
    # A root-owned folder that uid 1000 cannot write: the host user is root (a Linux
    # host where everything runs as root). Running as root is then the only way to save.
    echo "labkit: $WORK belongs to root on the host; running as root so that your" \
         "work can be saved (run docker-compose as a normal user to avoid this)." >&2
    export HOME=/home/lab
    start_relay "$@"
    exec "$@"
  fi
fi

if [ "$uid" != "$(id -u lab)" ] || [ "$gid" != "$(id -g lab)" ]; then
  sed -i "s/^lab:x:[0-9]*:[0-9]*:/lab:x:$uid:$gid:/" /etc/passwd
  sed -i "s/^lab:x:[0-9]*:/lab:x:$gid:/" /etc/group
  # Only the home folder itself, its dot-folders and ~/kafka (the console tools' links):
  # never recurse into the bind mount.
  chown "$uid:$gid" /home/lab
  for entry in /home/lab/.[!.]* /home/lab/kafka; do
    if [ -e "$entry" ]; then chown -R "$uid:$gid" "$entry"; fi
  done
fi

export HOME=/home/lab USER=lab LOGNAME=lab
# Drop root for good, then run this script again as `lab` (the branch above).
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$0" "$@"
