from .deeplab_v3plus import ASPP, WSSDeepLabV3PlusHead
