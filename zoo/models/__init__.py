"""Model families; importing this package registers them all."""
from zoo.models import resnet_rs  # noqa: F401
from zoo.models import volo  # noqa: F401
from zoo.models import denoisers  # noqa: F401
from zoo.models import pdnet  # noqa: F401
from zoo.models import faceguard  # noqa: F401
