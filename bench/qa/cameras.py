"""The cameras of `scissor bench qa`: ten reels of packaged images and clips, the held-out split, and the
sessions they run in (three cameras live at a time where a split allows). Pure data.
"""

from __future__ import annotations

from bench.qa.footage import Reel

BIKES, PHONE, BUNNY = "clip:bikes.mp4", "clip:carphone_pristine.mp4", "clip:bigbuckbunny.mp4"
HOPPER, MPL_LOGO = "mpl:grace_hopper.jpg", "mpl:logo2.png"
REELS = {
    r.camera: r
    for r in (
        # tuning split
        Reel("lobby", (("photo:coffee", 10), ("blank", 4), ("photo:chelsea", 10), ("photo:brick", 6),
                       ("photo:astronaut", 10), ("blank", 4), ("photo:coffee", 8), ("photo:grass", 6),
                       ("photo:chelsea", 10)), seed=1),
        Reel("desk", (("photo:grass", 6), ("photo:rocket", 10), ("photo:brick", 6), ("photo:rocket", 8),
                      ("photo:gravel", 6), ("photo:clock", 10), ("blank", 4), ("photo:coins", 8)), seed=2),
        Reel("street", ((BIKES, 40), (PHONE, 16)), seed=3),
        Reel("garage", (("photo:motorcycle", 10), ("blank", 4), ("photo:horse", 10), ("photo:gravel", 6),
                        ("photo:motorcycle", 10), ("photo:text", 6), ("photo:clock", 8)), seed=4),
        Reel("portrait", ((HOPPER, 10), ("blank", 4), (MPL_LOGO, 6), ("photo:coffee", 10), ("photo:moon", 6),
                          (HOPPER, 8), ("photo:hubble_deep_field", 6)), seed=5),
        # held-out split
        Reel("meadow", ((BUNNY, 20), ("photo:grass", 6), ("photo:horse", 10), ("blank", 4), (BUNNY, 16)),
             seed=6),
        Reel("hall", (("faces:4", 10), ("blank", 4), ("photo:clock", 10), ("photo:camera", 10),
                      ("photo:gravel", 6), ("faces:2", 8), ("photo:chelsea", 10)), seed=7),
        Reel("yard", (("photo:chelsea", 10), ("photo:gravel", 6), (BIKES, 32), ("photo:hubble_deep_field", 4),
                      ("photo:motorcycle", 8)), seed=8),
        Reel("office", ((HOPPER, 8), ("photo:coffee", 10), ("photo:text", 6), ("photo:clock", 10),
                        ("blank", 4), ("photo:rocket", 10), ("photo:brick", 6)), seed=9),
        Reel("kitchen", (("photo:coffee", 10), ("photo:coins", 8), ("photo:chelsea", 8), ("blank", 4),
                         ("photo:coffee", 10), (PHONE, 14), ("photo:grass", 6)), seed=10),
    )
}  # fmt: skip
# The held-out split: chosen on 2026-12-08, when these reels were first written and before any run of them was
# scored, to hold subjects and arrangements the answer rules were not written against (the rabbit clip, LFW
# faces, the cameraman, new orders of the old photos). Answer rules, phrasings and thresholds must never be
# tuned on these cameras' questions or results: read their numbers, never fit to them.
HELD_OUT = frozenset({"meadow", "hall", "yard", "office", "kitchen"})
TUNING = frozenset(REELS) - HELD_OUT
# Cameras that run together in one service (multi-camera questions stay inside one), each added this many
# seconds after the session's first; the three-camera sessions time the latency of questions while live.
SESSIONS: tuple[tuple[tuple[str, float], ...], ...] = (
    (("lobby", 0.0), ("street", 3.0), ("desk", 6.0)),
    (("garage", 0.0), ("portrait", 3.0)),
    (("meadow", 0.0), ("hall", 3.0), ("yard", 6.0)),
    (("office", 0.0), ("kitchen", 3.0)),
)


def split_of(camera: str) -> str:
    """'held_out' or 'tuning'."""
    return "held_out" if camera in HELD_OUT else "tuning"
