"""λ-returns (Equation 4) against 3-step examples computed by hand."""

import pytest
import torch

from reverie.behavior.returns import lambda_return

REWARD = torch.tensor([1.0, 2.0, 3.0])
VALUE = torch.tensor([10.0, 20.0, 30.0])  # v_0 is never used, only v_{t+1}
BOOTSTRAP = torch.tensor(40.0)  # v_3
DISCOUNT_HITS_ZERO = torch.tensor([0.5, 0.0, 0.5])


@pytest.mark.parametrize(
    "lambda_, expected",
    [
        # λ = 0, 1-step TD targets R_t = r_t + γ_t·v_{t+1}:
        #   R_2 = 3 + 0.5·40 = 23;  R_1 = 2 + 0·30 = 2;  R_0 = 1 + 0.5·20 = 11
        (0.0, [11.0, 2.0, 23.0]),
        # λ = 1, bootstrapped Monte Carlo R_t = r_t + γ_t·R_{t+1}:
        #   R_2 = 3 + 0.5·40 = 23;  R_1 = 2 + 0·23 = 2;  R_0 = 1 + 0.5·2 = 2
        (1.0, [2.0, 2.0, 23.0]),
        # λ = 0.95, R_t = r_t + γ_t·(0.05·v_{t+1} + 0.95·R_{t+1}):
        #   R_2 = 3 + 0.5·(0.05·40 + 0.95·40) = 23;  R_1 = 2 + 0·(...) = 2
        #   R_0 = 1 + 0.5·(0.05·20 + 0.95·2) = 1 + 0.5·2.9 = 2.45
        (0.95, [2.45, 2.0, 23.0]),
    ],
)
def test_lambda_return_discount_hits_zero(lambda_, expected):
    result = lambda_return(REWARD, VALUE, DISCOUNT_HITS_ZERO, BOOTSTRAP, lambda_)
    torch.testing.assert_close(result, torch.tensor(expected))


def test_lambda_return_full_chain():
    # γ = 0.5 everywhere, λ = 0.95:
    #   R_2 = 3 + 0.5·40 = 23
    #   R_1 = 2 + 0.5·(0.05·30 + 0.95·23) = 2 + 0.5·23.35 = 13.675
    #   R_0 = 1 + 0.5·(0.05·20 + 0.95·13.675) = 1 + 0.5·13.99125 = 7.995625
    result = lambda_return(REWARD, VALUE, torch.full((3,), 0.5), BOOTSTRAP, 0.95)
    torch.testing.assert_close(result, torch.tensor([7.995625, 13.675, 23.0]))


def test_lambda_return_batched_shape_and_independence():
    # [T, N]: each column is computed independently.
    reward = torch.stack([REWARD, 2 * REWARD], 1)
    value = torch.stack([VALUE, VALUE], 1)
    discount = torch.stack([DISCOUNT_HITS_ZERO, DISCOUNT_HITS_ZERO], 1)
    result = lambda_return(reward, value, discount, torch.stack([BOOTSTRAP, BOOTSTRAP]), 0.0)
    assert result.shape == (3, 2)
    torch.testing.assert_close(result[:, 0], torch.tensor([11.0, 2.0, 23.0]))
    torch.testing.assert_close(result[:, 1], torch.tensor([12.0, 4.0, 26.0]))
