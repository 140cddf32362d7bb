"""QDagger's distillation loss, λ schedule and tied learning rate (reference checks Q3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl.agents.distillation import distillation_loss, normalized_score, qdagger_lambda, tied_learning_rate

TAU = 0.1


def q_values(seed, shape=(8, 5), scale=1.0):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_kl_is_zero_with_zero_gradient_when_student_equals_teacher():
    q = q_values(0)
    loss, grad = jax.value_and_grad(distillation_loss)(q, q, TAU, "policy")
    assert abs(float(loss)) < 1e-6
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    assert float(distillation_loss(q + 0.3 * q_values(1), q, TAU, "policy")) > 1e-3


def test_kl_gradient_is_the_cross_entropy_gradient_and_matches_finite_differences():
    student, teacher = q_values(2, scale=0.2), q_values(3, scale=0.2)

    def cross_entropy(s):
        target = jax.nn.softmax(teacher / TAU, axis=-1)
        return -jnp.mean(jnp.sum(target * jax.nn.log_softmax(s / TAU, axis=-1), axis=-1))

    grad = jax.grad(distillation_loss)(student, teacher, TAU, "policy")
    np.testing.assert_allclose(grad, jax.grad(cross_entropy)(student), rtol=1e-5, atol=1e-7)
    # central finite differences on a few coordinates
    h = 1e-3
    for index in [(0, 0), (3, 2), (7, 4)]:
        bump = jnp.zeros_like(student).at[index].set(h)
        up = float(distillation_loss(student + bump, teacher, TAU, "policy"))
        down = float(distillation_loss(student - bump, teacher, TAU, "policy"))
        assert (up - down) / (2 * h) == pytest.approx(float(grad[index]), rel=2e-2, abs=1e-4)


def test_small_temperature_approaches_cross_entropy_to_the_teachers_best_action():
    student, teacher = q_values(4), q_values(5)
    tau = 1e-3
    policy = float(distillation_loss(student, teacher, tau, "policy"))
    best = float(distillation_loss(student, teacher, tau, "best_action"))
    assert policy == pytest.approx(best, rel=1e-3)


def test_value_and_combined_variants():
    student, teacher = q_values(6), q_values(7)
    value = float(distillation_loss(student, teacher, TAU, "value"))
    assert value == pytest.approx(float(jnp.mean((student - teacher) ** 2)), rel=1e-6)
    both = float(distillation_loss(student, teacher, TAU, "policy_and_value"))
    assert both == pytest.approx(value + float(distillation_loss(student, teacher, TAU, "policy")), rel=1e-6)
    # no gradient reaches the teacher
    np.testing.assert_array_equal(jax.grad(distillation_loss, argnums=1)(student, teacher, TAU, "policy"), 0.0)


def test_lambda_follows_scripted_scores_then_sticks_at_zero():
    lam, seen = 1.0, []
    for step, score in enumerate([0.3, 0.8, 0.5, 1.1, 0.2]):
        lam = qdagger_lambda(lam, score, online_steps=step * 1000, decay_period=10_000)
        seen.append(lam)
    np.testing.assert_allclose(seen, [0.7, 0.2, 0.5, 0.0, 0.0], atol=1e-12)
    assert qdagger_lambda(0.9, 0.1, online_steps=10_001, decay_period=10_000) == 0.0
    assert qdagger_lambda(0.9, 0.1, online_steps=10_000, decay_period=10_000) == pytest.approx(0.9)


def test_scores_are_normalised_by_random_and_teacher_and_lr_is_tied_to_lambda():
    assert normalized_score(-1000.0, random_score=-1000.0, teacher_score=-120.0) == 0.0
    assert normalized_score(-120.0, random_score=-1000.0, teacher_score=-120.0) == pytest.approx(1.0)
    assert tied_learning_rate(1.0, 1e-4, 1e-5) == pytest.approx(1e-4)
    assert tied_learning_rate(0.0, 1e-4, 1e-5) == pytest.approx(1e-5)
    assert tied_learning_rate(0.5, 1e-4, 1e-5) == pytest.approx(5.5e-5)
