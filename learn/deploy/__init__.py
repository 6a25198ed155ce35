"""Deployment over the rosbridge protocol: ``deploy`` runs a trained policy on a robot through a bridge,
``twin`` is a rosbridge-protocol simulated robot on loopback (``symgym sim-robot``)."""
