"""forecastguard: keeps a retail demand-forecasting model healthy on Google Cloud.

The library holds what every deployable shares: settings, the database schema and
migrations, health statistics, adapters to outside services and the CLI. It never
imports TensorFlow, so the Cloud Functions that vendor it stay quick to start.
"""

__version__ = "0.1.0"
