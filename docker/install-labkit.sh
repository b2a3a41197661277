#!/bin/sh
# labkit's own code, installed last in every image (stages `lab`, `lab-spark`, `lab-cluster` of
# docker/Dockerfile): run as root in /opt/labkit after the stage copied README.md,
# labkit/ and docker/ there. Everything before it (dependencies, Java, jars) does not
# depend on labkit's code, so editing the code rebuilds only this step and its COPYs.
set -eu
cd /opt/labkit

# labkit itself (small, changes often), with its compiled message catalogues
# (labkit/locale/*/LC_MESSAGES/*.mo, committed); its dependencies are already there.
pip install --no-deps .
rm -rf build ./*.egg-info

# Entrypoint, healthcheck, relay and JupyterLab settings. `sed` strips CR in case the
# checkout had Windows line endings despite .gitattributes.
cd docker
sed -i 's/\r$//' entrypoint.sh healthcheck.py relay.py zookeeper.sh
install -m 0755 entrypoint.sh /usr/local/bin/labkit-entrypoint
install -m 0755 healthcheck.py /usr/local/bin/labkit-healthcheck
install -m 0755 relay.py /usr/local/bin/labkit-relay
install -m 0755 zookeeper.sh /usr/local/bin/labkit-zookeeper  # the cluster profile's
install -D -m 0644 overrides.json /usr/local/share/jupyter/lab/settings/overrides.json
cd .. && rm -rf docker
labkit --version
command -v kafka-topics.sh kafka-console-consumer.sh >/dev/null

# ~/kafka/bin with the console tools (links to /usr/local/bin's), as the course's Kafka
# image has it: `cd ~ && kafka/bin/kafka-topics.sh --list --bootstrap-server broker:9092`.
# Made by the user `lab` itself, who owns it.
setpriv --reuid=1000 --regid=1000 --clear-groups env HOME=/home/lab \
  labkit kafka-bin /home/lab/kafka/bin >/dev/null
/home/lab/kafka/bin/kafka-topics.sh --help >/dev/null
