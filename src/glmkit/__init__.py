"""glmkit."""
