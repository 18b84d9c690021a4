"""The offline Kaggle: a loopback stand-in for Kaggle's API and a sandbox that runs notebooks as Kaggle does."""
