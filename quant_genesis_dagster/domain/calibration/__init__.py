"""The self-calibration loop (SPEC §9): a gymnasium environment whose transition is the daily
engine's own portfolio and backtest code, the agents that learn parameter sets in it, the
walk-forward evaluation that decides whether a proposal is better than what is deployed, and
the governance that registers it.

* ``data``         point-in-time inputs of the calibration window, loaded once (frames → arrays)
* ``simulator``    one calibration period under a parameter set: predict → signals → decide →
                   backtest, the functions the daily assets call
* ``spaces``       action interpreters (symmetric float32 boxes → parameter ranges, per agent
                   role) and the observation builder (the SPEC §9 state, normalized)
* ``reward``       Sharpe_30D − λ·MDD_30D plus the fast reward, and the sub-agents' bonus
* ``env``          ``CalibrationEnv`` (gymnasium) = simulator + interpreters + reward
* ``agents``       stable-baselines3 PPO agents (hierarchical or flat), training, save / load
* ``walkforward``  the candidates (RL, champion, defaults, rolling least squares, equal
                   weights) on the next unseen window, with the same costs
* ``calibrate``    one calibration: train → walk-forward → proposal
* ``governance``   MLflow run + registered version, the human-approval gate, approve / reject

Only ``agents`` imports stable-baselines3 / torch, and only ``governance`` (through the
parameter store) MLflow — both lazily where they can.
"""
