"""Padding-length buckets (fxformers.ops.bucketing)."""

import pytest

from fxformers.ops.bucketing import bucket_length, bucket_lengths


@pytest.mark.parametrize(
    "n, kwargs, expected",
    [
        (0, {}, 16), (1, {}, 16), (16, {}, 16), (17, {}, 32), (100, {}, 128), (129, {}, 256),
        (5, {"minimum": 1}, 8), (8, {"minimum": 1}, 8),
        (100, {"multiple": 128}, 128), (129, {"multiple": 128}, 256), (260, {"multiple": 128}, 384),
        (513, {"multiple": 128}, 640), (40, {"multiple": 48}, 48), (49, {"multiple": 48}, 96),
        (300, {"max_length": 512}, 512), (600, {"multiple": 128, "max_length": 512}, 600),
        (100, {"max_length": 100}, 100), (70, {"max_length": 100}, 100),
    ],
)
def test_bucket_length(n, kwargs, expected):
    assert bucket_length(n, **kwargs) == expected


def test_bucket_length_covers_and_is_monotone():
    for multiple in (None, 64, 100):
        previous = 0
        for n in range(0, 1100):
            b = bucket_length(n, multiple=multiple, max_length=1024)
            assert b >= n and b >= previous
            previous = b


def test_bucket_lengths_lists_every_bucket():
    assert bucket_lengths(512) == [16, 32, 64, 128, 256, 512]
    assert bucket_lengths(512, multiple=128) == [16, 32, 64, 128, 256, 384, 512]
    assert bucket_lengths(100) == [16, 32, 64, 100]
    got = {bucket_length(n, multiple=128, max_length=512) for n in range(1, 513)}
    assert sorted(got) == bucket_lengths(512, multiple=128)


def test_bucket_length_errors():
    with pytest.raises(ValueError, match="length >= 0"):
        bucket_length(-1)
    with pytest.raises(ValueError, match="multiple"):
        bucket_length(10, multiple=0)
