#!/usr/bin/env bash
# Local Apache Kafka for columnist: one KRaft broker+controller on 127.0.0.1.
#   deploy/kafka/kafka.sh up      fetch jars if missing, format storage, start, wait, create topics
#   deploy/kafka/kafka.sh down    stop the broker this script started (by its PID)
#   deploy/kafka/kafka.sh status  say whether it runs
# Environment: KAFKA_DATA (default .columnist/kafka), KAFKA_PORT (9092),
# KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), PYTHON (.venv/bin/python), and the COLUMNIST_*
# topic settings used when creating topics.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
data="${KAFKA_DATA:-$repo/.columnist/kafka}"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
python="${PYTHON:-$repo/.venv/bin/python}"
java="${JAVA:-java}"
pidfile="$data/kafka.pid"

fetch() {
  if compgen -G "$here/libs/kafka_2.13-*.jar" > /dev/null; then return; fi
  echo "fetching Apache Kafka jars from Maven Central into $here/libs ..."
  (cd "$here" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=libs -DincludeScope=runtime)
}

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up() {
  if running; then echo "kafka already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; return; fi
  for p in "$port" "$controller_port"; do
    if listening "$p"; then
      echo "127.0.0.1:$p is in use by a process this script did not start; stop it or set KAFKA_PORT / KAFKA_CONTROLLER_PORT" >&2
      exit 1
    fi
  done
  fetch
  mkdir -p "$data/logs"
  sed -e "s|@DATA@|$data|g" -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
    "$here/server.properties.in" > "$data/server.properties"
  local classpath="$here/libs/*"
  local jvm=(-Xms256m -Xmx1g -Dlog4j2.configurationFile="$here/log4j2.yaml")
  if [[ ! -f "$data/logs/meta.properties" ]]; then
    local cluster_id
    cluster_id="$("$java" "${jvm[@]}" -cp "$classpath" kafka.tools.StorageTool random-uuid)"
    "$java" "${jvm[@]}" -cp "$classpath" kafka.tools.StorageTool format --standalone \
      -t "$cluster_id" -c "$data/server.properties" --ignore-formatted > "$data/format.log"
  fi
  nohup "$java" "${jvm[@]}" -cp "$classpath" kafka.Kafka "$data/server.properties" \
    > "$data/kafka.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  echo "kafka starting (pid $(cat "$pidfile")) on 127.0.0.1:$port, log $data/kafka.log"
  if ! COLUMNIST_KAFKA="127.0.0.1:$port" "$python" -m columnist.kafka.admin wait-and-create --timeout 120 \
     || ! running; then  # the broker that answered must be the one this script started
    echo "kafka did not become ready; last log lines:" >&2
    tail -n 30 "$data/kafka.log" >&2
    down
    exit 1
  fi
}

down() {
  if ! running; then echo "kafka not running"; rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then echo "kafka (pid $pid) ignored SIGTERM for 30 s; killing"; kill -9 "$pid"; fi
  rm -f "$pidfile"
  echo "kafka stopped (pid $pid)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status)
    if running; then echo "kafka running (pid $(cat "$pidfile"), started by this script) on 127.0.0.1:$port"
    elif listening "$port"; then echo "kafka not running from this script; 127.0.0.1:$port is used by another process"; exit 1
    else echo "kafka not running"; exit 1; fi ;;
  fetch) fetch ;;
  *) echo "usage: $0 up|down|status|fetch" >&2; exit 2 ;;
esac
