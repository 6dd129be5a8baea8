-- wrk script: keep-alive POSTs of one small JSON message.
-- wrk -t2 -c64 -d10s -s benchmarks/publish.lua http://127.0.0.1:8080/rooms/bench/messages
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"user":"bench","text":"hello from wrk, a message of ordinary length"}'
