"""mir_eval metrics, reports and prediction on any audio (`hkd-eval`)."""
