"""The job: flags (`cli`), options (`options`), the steps of a run (`steps`), `main`."""
