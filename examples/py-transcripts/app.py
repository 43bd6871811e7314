"""The transcripts pipeline of the seeds, in Python: a workflow (`pipeline`) and its leaf tasks.

Every leaf task is an export of this same component, so `pipeline` calls them as children of its
own deployment: `<deployment>/fetch-track`, `<deployment>/transcribe`, ...
"""

import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import List, Optional

import wit_world
from wit_world import FetchError_Rejected, FetchError_Retryable, Segment, Topic, Track, Transcript
from wit_world import Report
from componentize_py_types import Err
from hypergraph_guest import ChildError, context, kv, log, workflow

STOP_WORDS = set(
    "a an and are as at be but by for from has have i in is it its of on or our so that the "
    "then there this to was we were will with you your not do does can just also".split()
)


@dataclass
class TrackIn:
    speaker: str
    text: str


@dataclass
class SegmentIn:
    speaker: str
    index: int
    text: str
    words: List[str]


@dataclass
class TranscriptIn:
    speaker: str
    segments: List[SegmentIn]


@dataclass
class TopicIn:
    word: str
    count: int


def deployment() -> str:
    return context.task_name().split("/")[0]


def reason(error: ChildError) -> str:
    """A failed child's reason: its application error's payload, else the failure message."""
    if error.is_application() and isinstance(error.value, dict) and error.value:
        return str(next(iter(error.value.values())))
    return error.message


def sentences(text: str) -> List[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def words(sentence: str) -> List[str]:
    return re.findall(r"[a-z0-9']+", sentence.lower())


class WitWorld(wit_world.WitWorld):
    def fetch_track(self, track: Track) -> Track:
        text = track.text.replace("\ufeff", "").replace("\r", "").strip()
        if not track.speaker.strip():
            raise Err(FetchError_Rejected("a track needs a speaker"))
        if "#broken" in text:
            raise Err(FetchError_Rejected(f"{track.speaker}'s track is corrupt"))
        if "#flaky" in text and context.attempt() == 1:
            log.warn(f"{track.speaker}'s track: download interrupted, will retry")
            raise Err(FetchError_Retryable(f"{track.speaker}'s download was interrupted"))
        text = text.replace("#flaky", "").strip()
        if not text:
            raise Err(FetchError_Rejected(f"{track.speaker}'s track is empty"))
        return Track(track.speaker.strip(), text)

    def transcribe(self, track: Track) -> Transcript:
        segments = [
            Segment(track.speaker, i, s, words(s)) for i, s in enumerate(sentences(track.text))
        ]
        log.info(f"{track.speaker}: {len(segments)} sentences")
        return Transcript(track.speaker, segments)

    def topics(self, transcripts: List[Transcript], limit: int) -> List[Topic]:
        counts = Counter(
            w
            for t in transcripts
            for s in t.segments
            for w in s.words
            if w not in STOP_WORDS and len(w) > 2
        )
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [Topic(word, count) for word, count in ranked]

    def summary(
        self, transcripts: List[Transcript], topics: List[Topic], outage_until_ms: Optional[int]
    ) -> str:
        if outage_until_ms is not None and time.time() * 1000 < outage_until_ms:
            raise RuntimeError("the summary service is unavailable (injected outage)")
        top = {t.word for t in topics}
        scored = [
            (sum(w in top for w in s.words), -s.index, s)
            for t in transcripts
            for s in t.segments
        ]
        best = sorted(scored, key=lambda x: (-x[0], -x[1], x[2].speaker))[:2]
        return " ".join(f"{s.speaker}: {s.text}" for _, _, s in best)

    def pipeline(self, job) -> Report:
        dep = deployment()
        fetched = workflow.join(
            workflow.start_all(f"{dep}/fetch-track", job.tracks), type=TrackIn, return_exceptions=True
        )
        failed = [
            f"{t.speaker}: {reason(e)}" for t, e in zip(job.tracks, fetched) if isinstance(e, ChildError)
        ]
        good = [t for t in fetched if not isinstance(t, ChildError)]
        if not good:
            raise Err("no track could be fetched: " + "; ".join(failed))
        transcripts = workflow.join(
            workflow.start_all(f"{dep}/transcribe", good), type=TranscriptIn
        )
        topics = workflow.call(
            f"{dep}/topics", {"transcripts": transcripts, "limit": 5}, type=List[TopicIn]
        )
        summary = workflow.call(
            f"{dep}/summary",
            {"transcripts": transcripts, "topics": topics, "outage-until-ms": job.outage_until_ms},
            type=str,
        )
        words = sum(len(s.words) for t in transcripts for s in t.segments)
        title = job.title_hint or ("Meeting: " + ", ".join(t.word for t in topics[:3]))
        # kv: a counter of processed meetings, committed only if the workflow succeeds.
        processed = int(kv.get_string("meetings-processed") or "0") + 1
        kv.set_string("meetings-processed", str(processed))
        return Report(
            title=title,
            summary=summary,
            topics=[t.word for t in topics],
            speakers=[t.speaker for t in transcripts],
            words=words,
            failed=failed,
            meetings_processed=processed,
        )
