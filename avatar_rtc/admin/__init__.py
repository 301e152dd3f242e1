"""The admin API: voice profiles and conversation history, mounted at /admin.

Entry point: ``create_admin_app(state)`` in ``avatar_rtc.admin.app``.
"""
