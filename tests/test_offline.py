"""Offline-pretraining baselines' losses: DQfD's large margin and discrete CQL, by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl.agents.offline import cql_loss, large_margin_loss

Q = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
ACTIONS = jnp.array([1, 0])


def test_large_margin_by_hand():
    # row 0: max(1+1, 2+0, 0.5+1) - 2 = 0; row 1: max(0+0, -1+1, 3+1) - 0 = 4
    assert float(large_margin_loss(Q, ACTIONS, 1.0)) == pytest.approx((0.0 + 4.0) / 2)
    # with the margin met everywhere the loss and its gradient vanish
    met = jnp.array([[0.0, 5.0, 1.0]])
    assert float(large_margin_loss(met, jnp.array([1]), 1.0)) == 0.0
    grad = jax.grad(large_margin_loss)(Q, ACTIONS, 1.0)
    np.testing.assert_allclose(grad[1], [-0.5, 0.0, 0.5])  # push the data's action up, the leader down


def test_cql_by_hand():
    expected = np.mean([np.log(np.exp(Q[i]).sum()) - Q[i, a] for i, a in enumerate(np.asarray(ACTIONS))])
    assert float(cql_loss(Q, ACTIONS)) == pytest.approx(expected, rel=1e-6)
    grad = np.asarray(jax.grad(cql_loss)(Q, ACTIONS))
    assert grad[0, 1] < 0 and grad[0, 0] > 0 and grad[0, 2] > 0
    np.testing.assert_allclose(grad.sum(axis=-1), 0.0, atol=1e-7)  # softmax minus one-hot, over 2 rows


def test_a_mask_restricts_the_regularizers_to_the_teachers_samples():
    mask = jnp.array([0.0, 1.0])
    assert float(large_margin_loss(Q, ACTIONS, 1.0, mask)) == pytest.approx(4.0)  # row 1 only
    row0 = float(jax.nn.logsumexp(Q[0]) - Q[0, 1])
    assert float(cql_loss(Q, ACTIONS, jnp.array([1.0, 0.0]))) == pytest.approx(row0, rel=1e-6)
    assert float(cql_loss(Q, ACTIONS, jnp.zeros(2))) == 0.0
