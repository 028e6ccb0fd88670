"""CPL: Contrastive Preference Learning (Hejna et al., ICLR 2024).

``losses`` holds the paper's losses as pure functions; ``agent`` the CPL agent
(CPL, CPL(BC), CPL-KL). The SFT and P-IQL baselines and the MetaWorld
preference datasets are still to come (issue 5).
"""
