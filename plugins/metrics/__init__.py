"""First-party metrics: top-1 and top-5 accuracy, mean IoU."""
