"""Initial processing of an uploaded video: plan the frame extraction and captioning work."""

from __future__ import annotations

from typing import Literal, Optional

from prefect import flow, get_run_logger, task


@task
def plan_segments(duration_seconds: float, segment_seconds: int) -> list[tuple[float, float]]:
    """Split the video timeline into segments of at most `segment_seconds`."""
    segments = []
    start = 0.0
    while start < duration_seconds:
        end = min(start + segment_seconds, duration_seconds)
        segments.append((start, end))
        start = end
    return segments


@flow(log_prints=True)
def video_initial_processing(
    video_id: str,
    duration_seconds: float = 90.0,
    segment_seconds: int = 30,
    languages: list[str] = ["en"],
    quality: Literal["draft", "final"] = "draft",
    priority: Optional[int] = None,
) -> dict:
    """Plan the initial processing of one uploaded video.

    Splits the video into segments and computes how many caption jobs the
    requested languages need.

    Args:
        video_id: Identifier of the uploaded video.
        duration_seconds: Length of the video in seconds.
        segment_seconds: Longest segment handed to one caption job.
        languages: Caption languages to produce.
        quality: Processing quality.
        priority: Optional queue priority; higher runs first.
    """
    logger = get_run_logger()
    segments = plan_segments(duration_seconds, segment_seconds)
    jobs = len(segments) * len(languages)
    logger.info(
        "video %s: %d segments x %d languages = %d caption jobs (%s, priority %s)",
        video_id, len(segments), len(languages), jobs, quality, priority,
    )
    return {"video_id": video_id, "segments": len(segments), "caption_jobs": jobs}


if __name__ == "__main__":
    print(video_initial_processing(video_id="local-test"))
