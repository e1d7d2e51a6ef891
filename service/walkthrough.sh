#!/usr/bin/env bash
# The README's curl walk-through as a script (needs redis-server, curl, jq).
# Starts Redis/API/worker, exercises them, then stops exactly what it started.
set -u
# Ports: defaults 6379 / 8001; override e.g. REDIS_PORT=6391 API_PORT=8012 bash service/walkthrough.sh
export REDIS_PORT=${REDIS_PORT:-6379} API_PORT=${API_PORT:-8001}
export CELERY_BROKER_URL=redis://127.0.0.1:$REDIS_PORT/0
export DATABASE_URL=sqlite:///./data-sync.db ADMIN_TOKEN=admin-secret
API=http://127.0.0.1:$API_PORT
AUTH="Authorization: Bearer dev-token"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
WORK=${WORK_DIR:-$(mktemp -d /tmp/data-sync-walk.XXXXXX)}   # logs, DB, AOF live here, not in the repo
cd "$WORK" && echo "work dir: $WORK"

# 1. Redis with AOF, API, one worker (each in its own process group)
mkdir -p redis-data
redis-server --port $REDIS_PORT --bind 127.0.0.1 --appendonly yes --dir ./redis-data --save '' --daemonize yes --pidfile $PWD/redis.pid
setsid uvicorn service.main:app --host 127.0.0.1 --port $API_PORT > api.log 2>&1 &
echo $! > api.pid
setsid celery -A service.celery_app worker --loglevel=info --queues=data_sync,scheduled \
    --concurrency=4 --hostname=worker-0@%h > worker.log 2>&1 &
echo $! > worker.pid            # setsid: this pid is also the process-group id
sleep 6

echo "## health"
curl -s $API/health; echo

echo "## submit file 1"
R=$(curl -s -X POST $API/api/data-sync/sync-single-file -H "$AUTH" \
        -H 'Content-Type: application/json' -d '{"file_id": 1}'); echo "$R"
TASK=$(echo "$R" | jq -r .celery_task_id)
sleep 1
echo "## status"
curl -s $API/api/data-sync/task-status/$TASK -H "$AUTH"; echo

echo "## cancel -> REVOKED (file 3 = 100 rows, ~2 s of work)"
T2=$(curl -s -X POST $API/api/data-sync/sync-single-file -H "$AUTH" -H 'Content-Type: application/json' \
       -d '{"file_id": 3, "priority": 0}' | jq -r .celery_task_id)
curl -s -X DELETE $API/api/data-sync/cancel-task/$T2 -H "$AUTH"; echo
sleep 1; curl -s $API/api/data-sync/task-status/$T2 -H "$AUTH" | jq -c '{status, attempts}'

echo "## SIGKILL the worker mid-task, restart it, watch recovery"
T3=$(curl -s -X POST $API/api/data-sync/sync-single-file -H "$AUTH" -H 'Content-Type: application/json' \
       -d '{"file_id": 3}' | jq -r .celery_task_id)
sleep 1
curl -s $API/api/data-sync/task-status/$T3 -H "$AUTH" | jq -c '{status, attempts}'
kill -9 -- -$(cat worker.pid)     # SIGKILL the whole worker process group
setsid celery -A service.celery_app worker --loglevel=info --queues=data_sync,scheduled \
    --concurrency=4 --hostname=worker-0@%h >> worker.log 2>&1 &
echo $! > worker.pid
for i in $(seq 20); do
  S=$(curl -s $API/api/data-sync/task-status/$T3 -H "$AUTH" | jq -c '{status, attempts}'); echo "$S"
  case $S in *SUCCESS*) break;; esac; sleep 1
done
curl -s "$API/internal/ledger" -H "Authorization: Bearer $ADMIN_TOKEN" \
  | jq -c --arg t $T3 '.tasks[] | select(.task_id==$t) | {state, effects, expected_effects, outcomes: [.executions[].outcome]}'

echo "## stop Redis -> fallback"
redis-cli -p $REDIS_PORT shutdown
sleep 1
curl -s $API/health; echo
R=$(curl -s -w ' %{time_total}' -X POST $API/api/data-sync/sync-single-file -H "$AUTH" \
       -H 'Content-Type: application/json' -d '{"file_id": 2}'); echo "$R   <- body, then seconds"
T4=$(echo "${R% *}" | jq -r .celery_task_id)
sleep 1.5
curl -s $API/api/data-sync/task-status/$T4 -H "$AUTH" | jq -c '{status, mode}'
redis-server --port $REDIS_PORT --bind 127.0.0.1 --appendonly yes --dir ./redis-data --save '' --daemonize yes --pidfile $PWD/redis.pid
sleep 3
curl -s $API/health; echo

echo "## 10 concurrent submits"
PIDS=""
for i in $(seq 10); do
  curl -s -X POST $API/api/data-sync/sync-single-file -H "$AUTH" -H 'Content-Type: application/json' \
       -d "{\"file_id\": 1, \"priority\": $((i % 10))}" > sub-$i.json &
  PIDS="$PIDS $!"
done; wait $PIDS
cat sub-*.json | jq -r '.mode' | sort | uniq -c
sleep 3
for i in $(seq 10); do curl -s $API/api/data-sync/task-status/$(jq -r .celery_task_id sub-$i.json) -H "$AUTH" | jq -r .status; done | sort | uniq -c
python $ROOT/scripts/test_celery_task_status.py --url $API --token dev-token

echo "## cleanup (only what this script started)"
kill -TERM $(cat api.pid); kill -TERM -- -$(cat worker.pid)
redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true
sleep 3; kill -9 -- -$(cat worker.pid) 2>/dev/null; true
