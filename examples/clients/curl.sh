#!/usr/bin/env sh
# Stream with curl: -N turns off curl's own buffering so tokens print as they arrive.
URL="${TOKENWIRE_URL:-http://127.0.0.1:8000}"
MODEL="${TOKENWIRE_MODEL:-smollm2-135m-instruct-int8}"
curl -sN "$URL/v1/chat/completions" \
  -H 'content-type: application/json' \
  -d "{\"model\": \"$MODEL\", \"stream\": true,
       \"messages\": [{\"role\": \"user\", \"content\": \"Name the capital city of France.\"}]}"
