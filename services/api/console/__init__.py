"""The console's views beyond the email dashboard: alerts & incidents (alerts.py) and
the operators' health view (health.py); routes.py adds both, targets.py says where the
other services are. The pages are served from services/api/dashboard/ with the same
strict CSP."""
