"""The caching mirror of upstream (`[upstream] fallback = "mirror"`): pages kept on disk and
rendered here, files fetched once, verified and kept content-addressed. Never imports `web/`."""
