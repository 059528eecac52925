"""Model families; importing this package registers them all."""
from zoo.models import resnet_rs  # noqa: F401
