#!/bin/sh
# Make sure a MariaDB server answers on 127.0.0.1:3306 for the tests.
# Installs it when absent and starts it when installed but stopped; never
# touches a server that is already up. Set MODELBUS_TEST_MYSQL_URL to use
# another server and skip this.
set -e
[ -n "$MODELBUS_TEST_MYSQL_URL" ] && exit 0

ping() { mariadb-admin --protocol=tcp -h 127.0.0.1 -u root ping >/dev/null 2>&1 \
      || mysqladmin --protocol=tcp -h 127.0.0.1 -u root ping >/dev/null 2>&1; }

ping && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

if [ ! -x /usr/sbin/mariadbd ]; then
    echo "ensure-mariadb: installing mariadb-server" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-server >/dev/null
fi
echo "ensure-mariadb: starting mariadbd" >&2
$SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld
$SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
for _ in $(seq 1 60); do ping && exit 0; sleep 0.5; done
echo "ensure-mariadb: MariaDB did not come up on 127.0.0.1:3306" >&2
exit 1
