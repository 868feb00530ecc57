#!/bin/sh
# Backups of webook's MySQL/MariaDB databases (docs/backup.md): the mysql-backup CronJob runs
# `dump`, an operator runs `restore` (the runbook) and `list`. POSIX sh: the mysql image's
# shell, and the test's (tests/deploy/test_data_tier.py runs this very file).
#
#   mysql-backup dump DIR                        one new backup under DIR, keep the newest N
#   mysql-backup restore BACKUP DATABASE [TARGET]  DATABASE of backup directory BACKUP into
#                                                TARGET (default DATABASE), which must be empty
#   mysql-backup list DIR                        the complete backups, newest first
#
# A backup is a directory DIR/<UTC time, 20260101T021700Z> holding <database>.sql.gz per
# database (mysqldump --single-transaction: a consistent snapshot of each database without
# locking the services' InnoDB tables) and MANIFEST. It is written as DIR/.partial-<time>
# and renamed when every dump succeeded, so a directory with a time for a name is complete.
#
# Environment: MYSQL_HOST (127.0.0.1), MYSQL_PORT (3306), MYSQL_BACKUP_USER (root),
# MYSQL_BACKUP_PASSWORD (none; never on a command line: written to a private defaults file),
# MYSQL_BACKUP_DATABASES (space-separated; default every database named webook_* the user
# can see), MYSQL_BACKUP_KEEP (backups kept by dump, default 7).
set -eu
umask 077

die() {
  echo "mysql-backup: $*" >&2
  exit 1
}

checked_name() {  # database names go into statements: letters, digits and _ only
  case "$1" in
    '' | *[!A-Za-z0-9_]*) die "not a database name: '$1'" ;;
  esac
  printf '%s' "$1"
}

defaults=$(mktemp "${TMPDIR:-/tmp}/mysql-backup.XXXXXX")
trap 'rm -f "$defaults"' EXIT INT TERM
{
  echo "[client]"
  echo "host=${MYSQL_HOST:-127.0.0.1}"
  echo "port=${MYSQL_PORT:-3306}"
  echo "user=${MYSQL_BACKUP_USER:-root}"
  if [ -n "${MYSQL_BACKUP_PASSWORD:-}" ]; then
    printf 'password="%s"\n' "$MYSQL_BACKUP_PASSWORD"
  fi
} >"$defaults"

query() {  # one statement; its rows, tab-separated, without a header
  mysql --defaults-extra-file="$defaults" --batch --skip-column-names \
    --default-character-set=utf8mb4 -e "$1"
}

complete_backups() {  # DIR: the complete backups' names, newest first
  ls -1 "$1" | grep -E '^[0-9]{8}T[0-9]{6}Z$' | sort -r || true
}

dump() {
  dir="$1"
  keep="${MYSQL_BACKUP_KEEP:-7}"
  case "$keep" in '' | *[!0-9]* | 0) die "MYSQL_BACKUP_KEEP must be a positive number" ;; esac
  mkdir -p "$dir"
  databases="${MYSQL_BACKUP_DATABASES:-$(query "SHOW DATABASES LIKE 'webook\\_%'")}"
  [ -n "$databases" ] || die "no database to back up"
  # MySQL's mysqldump would otherwise write GTID statements a restore into another server
  # refuses; MariaDB's has no such option.
  gtid=""
  if mysqldump --help 2>/dev/null | grep -q -- '--set-gtid-purged'; then
    gtid="--set-gtid-purged=OFF"
  fi
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  while [ -e "$dir/$stamp" ]; do  # a backup in the same second: names must differ
    sleep 1
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
  done
  rm -rf "$dir"/.partial-*  # left by a run that was killed
  partial="$dir/.partial-$stamp"
  mkdir "$partial"
  for database in $databases; do
    database=$(checked_name "$database")
    # shellcheck disable=SC2086  # $gtid is one option or nothing
    mysqldump --defaults-extra-file="$defaults" --single-transaction --quick --hex-blob \
      --default-character-set=utf8mb4 --no-tablespaces --triggers $gtid \
      "$database" >"$partial/$database.sql" || die "mysqldump of $database failed"
    tail -n 1 "$partial/$database.sql" | grep -q '^-- Dump completed' \
      || die "the dump of $database is incomplete"
    gzip "$partial/$database.sql"
    echo "$database" >>"$partial/MANIFEST"
  done
  mv "$partial" "$dir/$stamp"
  echo "mysql-backup: $dir/$stamp: $(echo $databases)"
  complete_backups "$dir" | tail -n +"$((keep + 1))" | while read -r old; do
    rm -rf "${dir:?}/$old"
    echo "mysql-backup: removed $dir/$old (keeping $keep)"
  done
}

restore() {
  backup="$1"
  database=$(checked_name "$2")
  target=$(checked_name "${3:-$2}")
  file="$backup/$database.sql.gz"
  [ -f "$file" ] || die "no dump of $database in $backup"
  gzip -t "$file" || die "$file is damaged"
  gzip -dc "$file" | tail -n 1 | grep -q '^-- Dump completed' || die "$file is incomplete"
  tables=$(query "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$target'")
  [ "$tables" = 0 ] || die "database $target has $tables tables: restore into an empty one"
  query "CREATE DATABASE IF NOT EXISTS \`$target\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
  gzip -dc "$file" | mysql --defaults-extra-file="$defaults" --default-character-set=utf8mb4 \
    "$target" || die "restoring $database into $target failed"
  echo "mysql-backup: restored $database from $backup into $target"
}

[ $# -ge 1 ] || die "usage: mysql-backup dump DIR | restore BACKUP DATABASE [TARGET] | list DIR"
command="$1"
shift
case "$command" in
  dump)
    [ $# -eq 1 ] || die "usage: mysql-backup dump DIR"
    dump "$1"
    ;;
  restore)
    [ $# -eq 2 ] || [ $# -eq 3 ] || die "usage: mysql-backup restore BACKUP DATABASE [TARGET]"
    restore "$@"
    ;;
  list)
    [ $# -eq 1 ] || die "usage: mysql-backup list DIR"
    complete_backups "$1"
    ;;
  *) die "unknown command '$command': dump, restore or list" ;;
esac
