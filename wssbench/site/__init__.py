"""The leaderboard as a static site: ``wssbench leaderboard DIR... --format html --out SITE/``.

``index.html`` holds one table per leaderboard group and ``runs/`` a page per record, with a
copy of the record and its gallery beside it. Everything is inlined or local (the stylesheet
and script are ``site.css`` and ``site.js``, package data), so the site works from ``file://`` and from any
static host, and each page's Content-Security-Policy forbids loading anything from elsewhere.
The site reads the leaderboard's groups and rows (``wssbench.leaderboard``): it groups and
ranks nothing itself. Every value taken from a record is escaped: a record is user data.
"""

from wssbench.site.build import build_site
from wssbench.site.output import MANIFEST, check_site_dir

__all__ = ["MANIFEST", "build_site", "check_site_dir"]
