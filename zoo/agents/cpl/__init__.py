"""CPL: Contrastive Preference Learning (Hejna et al., ICLR 2024), with the paper's baselines.

``losses`` holds the paper's losses as pure functions; ``family`` the parts every
preference learner shares (the data, pairing, the actor, the loop); ``agent``
CPL (CPL, CPL(BC), CPL-KL) and the SFT baseline; ``piql`` the P-IQL baseline.
"""
