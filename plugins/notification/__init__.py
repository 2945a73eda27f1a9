"""The `notification` plugin: tell people or systems what a run did.

Channels: a JSON webhook (optionally signed with HMAC-SHA256), a Slack-compatible incoming
webhook, or an email through an SMTP server. The work runs in the plugin's container:
`python3 -m plugins.notification.src.run` (src/run.py). See docs/README.md and docs/api.md.
"""
