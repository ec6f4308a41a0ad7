"""anomclip — AnomalyCLIP (ICLR 2024) on open_clip, for a reproducible research book."""
from .dpam import VisualFeatures
from .errors import AnomclipError
from .model import AnomalyCLIP, AnomalyOutput
from .recipes import OFFICIAL, PAPER, RECIPES, Recipe, get_recipe, smoke

__version__ = "0.1.0"
__all__ = ["AnomalyCLIP", "AnomalyOutput", "AnomclipError", "Recipe", "RECIPES", "OFFICIAL", "PAPER",
           "VisualFeatures", "get_recipe", "smoke", "__version__"]
