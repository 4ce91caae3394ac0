"""The web app: one aiohttp Application (`ivr.web.app.build_web_app`) with a page module per
audience. Today: the admin page (analytics charts, `admin.py`) behind an admin login
(`security.py`). The visual caller page and the agent desk are meant to be added the same way,
as modules with a `setup(app)` passed to `build_web_app(pages=...)`.
"""
