"""CPL: Contrastive Preference Learning (Hejna et al., ICLR 2024). Work in progress: the losses."""
