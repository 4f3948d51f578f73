"""The network of the paper's Fig. 4: U-Net+SE with FREM and an optional SuperVision head (flax linen)."""
