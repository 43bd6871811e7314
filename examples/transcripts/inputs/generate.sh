#!/bin/sh
# Regenerates the pipeline inputs (inputs/*.json) and demo.json from tracks/. Needs jq.
set -eu
cd "$(dirname "$0")/.."

# job <flaky speaker> <broken speaker> [stage delay ms]: the three tracks of tracks/ as a `job`,
# with the failure-injection marker put in front of the named speakers' texts ("-" for none).
job() {
  jq -n --arg flaky "$1" --arg broken "$2" --arg delay "${3:-}" \
    --rawfile alice tracks/alice.txt --rawfile bob tracks/bob.txt --rawfile carol tracks/carol.txt '
    def mark($speaker; $text):
      (if $speaker == $flaky then "#flaky\n" else "" end)
      + (if $speaker == $broken then "#broken\n" else "" end) + $text;
    {
      "title-hint": "Billing sync",
      "tracks": [
        {speaker: "alice", text: mark("alice"; $alice)},
        {speaker: "bob", text: mark("bob"; $bob)},
        {speaker: "carol", text: mark("carol"; $carol)}
      ]
    }
    + (if $delay == "" then {} else {"stage-delay-ms": ($delay | tonumber)} end)'
}

# review <flaky speaker> <broken speaker>: the two tracks of tracks/review/, the input of the DAG
# variant (pipeline.dag.toml): a plain list of tracks, marked like job's.
review() {
  jq -n --arg flaky "$1" --arg broken "$2" \
    --rawfile alice tracks/review/alice.txt --rawfile bob tracks/review/bob.txt '
    def mark($speaker; $text):
      (if $speaker == $flaky then "#flaky\n" else "" end)
      + (if $speaker == $broken then "#broken\n" else "" end) + $text;
    [
      {speaker: "alice", text: mark("alice"; $alice)},
      {speaker: "bob", text: mark("bob"; $bob)}
    ]'
}

job - - > inputs/meeting.json
job bob - > inputs/flaky.json
job - carol > inputs/broken.json
job - - 5000 > inputs/slow.json
review - - > inputs/review.json
review bob - > inputs/review-flaky.json
review - bob > inputs/review-broken.json

jq -n --slurpfile meeting inputs/meeting.json --slurpfile flaky inputs/flaky.json \
  --slurpfile broken inputs/broken.json '{
  deployment: "transcripts",
  policy: {max_attempts: 3, backoff: "200ms"},
  runs: [
    {task: "transcripts/pipeline", input: $meeting[0]},
    {task: "transcripts/pipeline", input: $flaky[0],
     meta: {expect: "bob: fetch-track fails once (retryable), attempt 2 succeeds: the report of meeting.json"}},
    {task: "transcripts/pipeline", input: $broken[0], meta: {expect: "carol left out of the report"}},
    {task: "transcripts/fetch-track", input: {track: {speaker: "dave", text: "#broken"}},
     meta: {expect: "rejected"}}
  ]
}' > demo.json
