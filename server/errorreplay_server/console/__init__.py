"""The read-only web console on the HTTP listener: groups, replays, live errors, statistics
(views.py), its sign-in and CSRF rules (session.py), and the drawings it serves as inline SVG
(drawing.py). Templates are Jinja2 with autoescape on for every template."""
