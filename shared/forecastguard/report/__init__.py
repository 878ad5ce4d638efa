"""Pages a person looks at: the HTML report of every health check and the history.

- `check_page`: one check's self-contained report (written to the artifact store by the
  check itself, `health/<check_id>/report.html`);
- `history`: the trend of the last checks and one product's own history, from the database;
- `app`: `forecastguard serve`'s pages server (history at `/`, reports at `/checks/<id>`).

Charts are inline SVG (`svg`), pages are Jinja2 templates; both are imported lazily, only
when a page is made, so the health function's cold start does not pay for them.
"""
