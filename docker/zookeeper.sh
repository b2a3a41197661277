#!/bin/sh
# labkit-zookeeper: Apache ZooKeeper, one standalone server, for docker-compose's `cluster`
# profile (the `zookeeper` service; docs/replication.md, "The lab"). The image's
# `lab-cluster` stage brings Java 17 and the jars of `make zookeeper`
# ($LABKIT_ZOOKEEPER_LIBS); the data go to $ZOOKEEPER_DATA (default /data, a volume).
# Client port 2181 on every interface of the container (the compose network only: it is
# not published), no admin HTTP server, the four-letter words of the healthcheck allowed.
set -eu
LIBS="${LABKIT_ZOOKEEPER_LIBS:-/opt/jars/zookeeper}"
DATA="${ZOOKEEPER_DATA:-/data}"
if ! command -v java >/dev/null || ! ls "$LIBS"/zookeeper-3*.jar >/dev/null 2>&1; then
  echo "labkit-zookeeper: needs Java and ZooKeeper's jars in $LIBS: use the image's" \
       "lab-cluster stage (docker-compose --profile cluster build)" >&2
  exit 2
fi
CONF=$(mktemp -d)
cat >"$CONF/zoo.cfg" <<CFG
tickTime=2000
dataDir=$DATA
clientPort=2181
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,cons
maxClientCnxns=0
CFG
cat >"$CONF/logback.xml" <<'XML'
<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d %-5level %logger{36}: %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="OUT"/></root>
  <logger name="org.apache.zookeeper.server.ZooKeeperServerMain" level="INFO"/>
</configuration>
XML
echo "labkit-zookeeper: ZooKeeper on port 2181, data in $DATA" >&2
exec java -Xmx128m -XX:+UseSerialGC -Dzookeeper.jmx.log4j.disable=true \
  -Dlogback.configurationFile="$CONF/logback.xml" \
  -cp "$LIBS/*" org.apache.zookeeper.server.ZooKeeperServerMain "$CONF/zoo.cfg"
