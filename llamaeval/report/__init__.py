"""Reports of a benchmark run: a self-contained HTML page and a Markdown summary.

    write_report(run, path)   HTML (figures embedded as PNG, tables, significance,
                              manifest) from the package's Jinja2 templates; also <stem>.md
    markdown_summary(run)     the summary table, best configuration, significance, gate
    summary_table(run)        quality metrics joined with latency (seconds) per configuration
"""

from llamaeval.report._summary import check_thresholds, parse_thresholds, summary_table
from llamaeval.report._write import markdown_summary, write_report

__all__ = ["write_report", "markdown_summary", "summary_table", "parse_thresholds", "check_thresholds"]
