"""The migration report: one run's parameters, timeline, approvals, changes, mesh and cluster, as a page.

- ``collect``: what only the cluster knows, gathered by the ``audit_report`` task into XCom ``report``
  (change records of every try, already redacted; the cluster after; goldpinger's mesh, node by node).
- ``model``: the report of one run, from that XCom and Airflow's metadata database (task tries, approvals
  with who answered, mesh verdicts, params); a run still going shows what exists so far.
- ``svg``, ``markdown``, ``page``: the timeline and the mesh matrix as inline SVG, the report as
  Markdown and as an HTML page.
- ``app``: the api-server's FastAPI app behind the "Migration report" tab of each run.
- ``note``: the run's note (a short summary and a link to the tab), set when the run ends.

Airflow imports every ``.py`` under the plugins folder by its file name; ``.airflowignore`` keeps this
package out of that scan (``ui_plugin.py`` registers it).
"""
