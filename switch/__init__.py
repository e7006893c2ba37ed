"""onecard: the transaction switch of the Shiyan social security card one-card service."""
