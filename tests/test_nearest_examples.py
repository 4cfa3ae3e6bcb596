"""The 8-bit scan of training examples gives the float scan's nearest examples, exactly."""
import numpy as np
import pytest

from components.nearest_examples import ExampleIndex, unit


def float_scan(groups, queries, count):
    return [[np.sort(unit(group) @ query)[::-1][:count] for group in groups] for query in unit(queries)]


def clustered(rng, centres, size, spread):
    # Many near-copies of a few sentences, as paraphrased training examples are: close calls.
    picks = centres[rng.integers(0, len(centres), size)]
    return unit(picks + spread * rng.standard_normal(picks.shape)).astype(np.float32)


@pytest.mark.parametrize("count", [1, 2, 5])
def test_the_nearest_examples_are_the_float_scan_s(count):
    rng = np.random.default_rng(7)
    centres = unit(rng.standard_normal((40, 384)))
    groups = [clustered(rng, centres, 399, 0.05), clustered(rng, centres, 3, 0.2),
              clustered(rng, centres, 4337, 0.02), np.empty((0, 384), np.float32)]
    queries = np.vstack([clustered(rng, centres, 6, 0.05), groups[2][:2], rng.standard_normal((2, 384))])
    found = ExampleIndex(groups).most_similar(queries, count)
    expected = float_scan(groups, queries, count)
    for found_groups, expected_groups in zip(found, expected, strict=True):
        for got, want in zip(found_groups, expected_groups, strict=True):
            assert len(got) == len(want)
            assert np.abs(got - want).max(initial=0.0) < 1e-5
    # A query that is a training example finds itself.
    assert found[6][2][0] == pytest.approx(1.0, abs=1e-5)


def test_the_8_bit_estimates_stay_within_their_bound():
    # What makes the scan exact: no float similarity is further from its 8-bit estimate than the
    # bound the scan uses to keep the examples that may be among the nearest.
    rng = np.random.default_rng(3)
    examples = unit(rng.standard_normal((300, 384)) * rng.uniform(0.1, 3.0, (300, 384))).astype(np.float32)
    queries = unit(rng.standard_normal((20, 384)) ** 3).astype(np.float32)
    index = ExampleIndex([examples])
    estimates, errors = index.estimates(queries)
    exact = queries @ index.examples.T
    assert (np.abs(exact - estimates) <= errors).all()
    assert np.abs(exact - estimates).max() > 1e-4  # the estimates really are approximate


def test_a_single_embedding_and_no_examples_are_handled():
    index = ExampleIndex([np.eye(3, 384, dtype=np.float32)])
    assert index.most_similar(np.eye(1, 384, k=1, dtype=np.float32)[0], 2)[0][0] == pytest.approx([1.0, 0.0])
    empty = ExampleIndex([np.empty((0, 384), np.float32)])
    assert [len(similarities) for similarities in empty.most_similar(np.ones((2, 384), np.float32), 5)[0]] == [0]
