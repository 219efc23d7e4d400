"""TLS material, API tokens' neighbours: the Automation Licence."""
