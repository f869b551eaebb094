from .deeplab_v2 import DeepLabV2Head
from .deeplab_v3plus import AGMMDeepLabV3PlusHead, ASPP, DeepLabV3PlusFeatureHead, WSSDeepLabV3PlusHead
from .deeplab_v2 import SummedASPP
from .largefov import LargeFOV, LargeFOVHead
from .embedding import SPMLASPPv2SumHead, SPMLPSPEmbedHead
