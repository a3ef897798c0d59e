"""chatterbox_operator: the kopf operator reconciling TTSDeployment and VoiceLibrary resources."""
